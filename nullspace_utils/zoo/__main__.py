from nullspace_utils.zoo.train import main

if __name__ == "__main__":
    main()
