from nullspace_utils.profiles import get_profile

profile = get_profile()  # $NULLSPACE_PROFILE, else "teaching"
print(profile.name, profile.vit_models, profile.cnn_models)
images = profile.dataset("val", n=4)
model = profile.load_model(profile.vit_models[0])
