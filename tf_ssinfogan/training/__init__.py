"""Training: one run from a config (`trainer.train`: set-up, resume, fit, final evaluation, export), its Keras
callbacks (`callbacks`), preemption-safe stopping (`preemption`) and the custom loop for strategies (`loop`)."""
