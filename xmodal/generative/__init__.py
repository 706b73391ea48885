"""Generative backbones (the survey's Sec. 5): VAE, GAN, Gaussian and discrete diffusion, VQ tokenizers and
autoregressive priors, and the denoising networks they share. One module per idea:

- ``diffusion``: Gaussian diffusion with improved-diffusion's names, float64 (``GaussianDiffusion``,
  ``get_named_beta_schedule``, ``normal_kl``, ``discretized_gaussian_log_likelihood``)
- ``sampling``: any diffusers scheduler drives an xmodal denoiser (``scheduler_from_diffusion``,
  ``sample_with_scheduler``)
- ``guidance``: classifier-free guidance adapter (``ClassifierFreeGuidance``)
- ``latent``: latent diffusion over a VAE or VQ-VAE (``LatentDiffusion``)
- ``discrete``: D3PM (``D3PM``); ``vq_diffusion``: VQ-Diffusion's mask-and-replace and CDCD's contrastive loss
- ``vae``: ``gaussian_kl``, ``VAE`` (conditional too), ``StochasticSequenceVAE``
- ``gan``: losses, ``gradient_penalty``, ``r1_penalty``, ``ProjectionDiscriminator``, HiFi-GAN discriminators,
  ``feature_matching_loss``, ``EMA``
- ``vq``: ``VectorQuantizerEMA``, ``VQVAE`` and ``image_vqvae`` / ``audio_vqvae`` / ``motion_vqvae``
- ``autoregressive``: ``TransformerPrior`` (KV-cached sampling), ``rerank``
- ``networks``: ``UNet2d`` (diffusers), ``SpaceTimeUNet``, ``DiT``; ``toy``: 2-D toy data and energy distance

Modules are imported on demand (``from xmodal.generative.diffusion import GaussianDiffusion``), so importing
the package costs nothing and diffusers is needed only by the parts that use it.
"""
