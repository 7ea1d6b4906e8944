from nullspace_utils.profiles import eval_transform, get_profile, profile_device, spread_subset

profile = get_profile()  # a Profile: $NULLSPACE_PROFILE, else "teaching"
print(profile.name, profile.vit_models, profile.cnn_models)
images = profile.dataset("val", n=4)
model = profile.load_model(profile.vit_models[0])  # on profile.device
image, label = images[0]
print(profile.prediction_name(int(model(image[None]).argmax())), profile.class_names[label])  # output index -> name
print(profile.device, profile_device("imagenet"))  # $NULLSPACE_DEVICE, else cpu / the GPU if there is one
few = spread_subset(profile.dataset("val"), 10)  # 10 images spread over the whole split
print(len(few), eval_transform("vit_small_patch32_224"))  # timm's resize and crop for that model
