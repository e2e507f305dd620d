"""Serving: the TF Serving-ready SavedModel (`saved_model`), TFLite / LiteRT models (`tflite`), model cards
(`model_card`) and the latent explorer's server (`explorer`)."""
