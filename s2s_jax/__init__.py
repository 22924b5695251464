"""s2s_jax: recurrent sequence-to-sequence models with scheduled sampling in JAX."""
