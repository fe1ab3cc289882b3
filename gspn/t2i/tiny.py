"""Tiny random Stable Diffusion and SD-XL pipelines, built offline from configs: for tests, demos and notebooks.

Every component is a real diffusers / transformers class (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, CLIPTokenizer, DDPMScheduler), only small; nothing is downloaded. The tokenizer is a
CLIP byte-pair tokenizer whose vocabulary is made in memory: the lowercase letters, and whole-word
tokens for the words given.
"""

from collections.abc import Sequence

import torch

LETTERS = "abcdefghijklmnopqrstuvwxyz"
SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def tiny_tokenizer(words: Sequence[str] = (), max_length: int = 16):
    """A CLIPTokenizer over letters; each word in `words` becomes one token through a chain of merges."""
    from transformers import CLIPTokenizer

    tokens = [*SPECIAL, *LETTERS, *(letter + "</w>" for letter in LETTERS)]
    merges = []
    for word in sorted({w.lower() for w in words if len(w) > 1}):
        if not word.isalpha() or not word.isascii():
            raise ValueError(f"tiny_tokenizer: words must be ASCII letters only, got {word!r}")
        piece = word[0]
        for position, letter in enumerate(word[1:], start=1):
            last = position == len(word) - 1
            right = letter + ("</w>" if last else "")
            merges.append((piece, right))
            piece = piece + right
            tokens.append(piece)
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=list(dict.fromkeys(merges)), model_max_length=max_length)


def tiny_text_encoder(vocab_size: int, width: int = 32, max_length: int = 16, projection: bool = False, seed: int = 0):
    """A two-layer CLIP text model; with `projection` the SD-XL second encoder (pooled, projected output)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=max_length, projection_dim=width,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def tiny_unet(channels: Sequence[int] = (32, 64), cross_attention_dim: int = 32, sdxl: bool = False,
              sample_size: int = 16, seed: int = 0):
    """A UNet2DConditionModel with one cross-attention transformer (attn1 + attn2) per level and in the middle."""
    from diffusers import UNet2DConditionModel

    extra = {}
    if sdxl:  # micro-conditioning: six size numbers embedded with 8 channels each, plus the pooled text
        extra = dict(addition_embed_type="text_time", addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=6 * 8 + cross_attention_dim // 2)
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=tuple(channels),
        down_block_types=("CrossAttnDownBlock2D",) * len(channels),
        up_block_types=("CrossAttnUpBlock2D",) * len(channels),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=8, **extra).eval()


def tiny_vae(seed: int = 0):
    """An AutoencoderKL with 4 latent channels that halves the image side."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=32).eval()


def tiny_pipeline(sdxl: bool = False, words: Sequence[str] = (), seed: int = 0):
    """A StableDiffusionPipeline (or StableDiffusionXLPipeline) of tiny random components, without safety checker."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    tokenizer = tiny_tokenizer(words)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False, steps_offset=1)
    if not sdxl:
        return StableDiffusionPipeline(vae=tiny_vae(seed), text_encoder=tiny_text_encoder(len(tokenizer), seed=seed),
                                       tokenizer=tokenizer, unet=tiny_unet(seed=seed), scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    # SD-XL concatenates the two encoders' hidden states (16 + 16 = the UNet's 32 cross-attention channels)
    return StableDiffusionXLPipeline(
        vae=tiny_vae(seed), text_encoder=tiny_text_encoder(len(tokenizer), width=16, seed=seed),
        text_encoder_2=tiny_text_encoder(len(tokenizer), width=16, projection=True, seed=seed + 1),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=tiny_unet(sdxl=True, seed=seed), scheduler=scheduler)
