"""U-Net segmentation example: the paper's Table 3 (brain tumour segmentation on LGG MRI)."""
