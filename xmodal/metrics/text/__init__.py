"""Caption metrics reproducing pycocoevalcap (BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE) and its PTB tokenization."""

from xmodal.metrics.text.ptb_tokenizer import PUNCTUATIONS, ptb_tokens, tokenize_caption, tokenize_corpus

__all__ = ["PUNCTUATIONS", "ptb_tokens", "tokenize_caption", "tokenize_corpus"]
