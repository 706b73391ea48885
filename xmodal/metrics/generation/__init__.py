"""Generation metrics on files: FID, KID and IS on image folders, FVD on videos, CLIPScore/RefCLIPScore,
CLIPSIM and classifier accuracy, with a feature cache. The maths lives in :mod:`xmodal.metrics.vision`."""
