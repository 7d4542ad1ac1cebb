"""Paper B (ALDE): the diffusion model and purifier (`ddpm`), the defended pipeline and its attacks (`alde`)."""
