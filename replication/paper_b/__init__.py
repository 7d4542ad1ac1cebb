"""Paper B (ALDE): the diffusion model and purifier (`ddpm`)."""
