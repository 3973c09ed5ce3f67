"""Theory: the mixture of low-rank Gaussians (Assumption 1), its exact posterior mean, Jacobian and ε-model, and the verifier of Lemmas 1–3 and Theorem 1."""
