"""The model: the latent code and the table of code kinds (`latents`), the objective's terms as pure functions
(`losses`), pixel conversions (`images`), the networks (`networks`), the fused Adam (`optimizers`) and the Keras
model whose `train_step` runs the two phases of ss-InfoGAN (`ssinfogan.SSInfoGAN`)."""
