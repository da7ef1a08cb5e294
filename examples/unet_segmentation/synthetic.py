"""Deterministic synthetic lesion-segmentation data: the offline default of this example.

Each image is a smooth random texture (low-frequency waves plus blurred noise) standing in for
brain tissue, with three channels like the LGG MRI release (pre-contrast, FLAIR,
post-contrast). Most images carry one to three lesion-like blobs of varied size, irregular shape
(an ellipse whose radius is perturbed by random harmonics) and contrast that differs per channel;
a fraction of the images has no lesion at all, as most real MRI slices. The blobs' masks are the
ground truth. The same seed always gives the same data.
"""

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def _texture(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
  """Smooth background in about [0.2, 0.6]: random plane waves plus blurred noise."""
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  image = np.zeros((size, size, channels))
  for _ in range(4):
    frequency = rng.uniform(0.5, 4.0) * 2 * np.pi / size
    angle, phase = rng.uniform(0, 2 * np.pi, size=2)
    wave = np.sin(frequency * (rows * np.cos(angle) + cols * np.sin(angle)) + phase)
    image += rng.uniform(0.02, 0.06, size=channels) * wave[..., None]
  noise = ndimage.gaussian_filter(rng.normal(size=(size, size, channels)), sigma=(1.5, 1.5, 0))
  return 0.4 + image + 0.08 * noise / noise.std()


def _blob(rng: np.random.Generator, size: int) -> np.ndarray:
  """A boolean lesion mask: an ellipse of random size and angle with a wavy boundary."""
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  radius = rng.uniform(0.04, 0.16) * size
  center = rng.uniform(radius + 1, size - radius - 1, size=2)
  dy, dx = rows - center[0], cols - center[1]
  angle = rng.uniform(0, np.pi)
  along = dy * np.cos(angle) + dx * np.sin(angle)
  across = -dy * np.sin(angle) + dx * np.cos(angle)
  elongation = rng.uniform(1.0, 2.0)
  distance = np.hypot(along / elongation, across)
  polar = np.arctan2(across, along)
  boundary = radius * (1 + sum(rng.uniform(-0.15, 0.15) * np.cos(k * polar + rng.uniform(0, 6.3))
                               for k in (2, 3, 5)))
  return distance <= boundary


def make_split(num_images: int,
               image_size: int,
               seed: int | Sequence[int],
               empty_fraction: float = 0.3,
               channels: int = 3) -> dict[str, np.ndarray]:
  """Generates one split of synthetic data.

  Args:
    num_images: number of images.
    image_size: height and width in pixels.
    seed: seed of the NumPy generator (an int or a sequence of ints); each split should use
      its own.
    empty_fraction: expected fraction of images without any lesion.
    channels: image channels.

  Returns:
    {'image': uint8 (N, S, S, channels), 'label': uint8 (N, S, S, 1) in {0, 1}}.
  """
  if num_images < 1 or image_size < 8:
    raise ValueError(f'Need num_images >= 1 and image_size >= 8, got {num_images}, {image_size}.')
  if not 0 <= empty_fraction <= 1:
    raise ValueError(f'empty_fraction must be in [0, 1], got {empty_fraction}.')
  rng = np.random.default_rng(seed)
  images = np.empty((num_images, image_size, image_size, channels), np.uint8)
  labels = np.zeros((num_images, image_size, image_size, 1), np.uint8)
  for index in range(num_images):
    image = _texture(rng, image_size, channels)
    num_blobs = 0 if rng.random() < empty_fraction else rng.integers(1, 4)
    for _ in range(num_blobs):
      blob = _blob(rng, image_size)
      # Soft edge and inner texture, so the boundary is visible but not a hard step.
      soft = ndimage.gaussian_filter(blob.astype(float), sigma=1.0)
      contrast = rng.uniform(0.12, 0.4) * rng.uniform(0.5, 1.0, size=channels)
      inner = 1 + 0.3 * ndimage.gaussian_filter(rng.normal(size=blob.shape), sigma=2.0)
      image += (soft * inner)[..., None] * contrast
      labels[index, ..., 0] |= blob
    images[index] = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
  return {'image': images, 'label': labels}
