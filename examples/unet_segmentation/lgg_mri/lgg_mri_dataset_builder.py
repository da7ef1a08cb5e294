"""TFDS builder of the Kaggle "LGG MRI Segmentation" release (the ``kaggle_3m`` layout).

The data cannot be downloaded automatically (Kaggle needs an account), so the builder reads it
from TFDS's manual directory; see ``Builder.MANUAL_DOWNLOAD_INSTRUCTIONS``. Layout::

  kaggle_3m/
    TCGA_CS_4941_19960909/           one folder per patient
      TCGA_CS_4941_19960909_1.tif    slice 1: 256 x 256 x 3 uint8
      TCGA_CS_4941_19960909_1_mask.tif  its mask: 256 x 256 uint8, 0 or 255
      ...

Splits are made by patient, never by slice: neighbouring slices of one patient are nearly
identical, so a slice-level split would leak test data into training. The sorted patient IDs
are shuffled with a fixed seed and cut into train / validation / test by ``SPLIT_FRACTIONS``.
"""

import io
import re
from collections.abc import Iterator
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
import tifffile
from etils import epath

IMAGE_SHAPE = (256, 256, 3)
SPLIT_FRACTIONS = {'train': 0.7, 'validation': 0.15, 'test': 0.15}
_SPLIT_SEED = 0
_SLICE_PATTERN = re.compile(r'^(?P<patient>.+)_(?P<index>\d+)\.tif$')


def split_patients(patient_ids: Sequence[str]) -> dict[str, list[str]]:
  """Assigns each patient to one split, deterministically, by ``SPLIT_FRACTIONS``.

  Every split gets at least one patient when there are at least as many patients as splits.

  Args:
    patient_ids: patient folder names; their order does not matter.

  Returns:
    Split name -> sorted patient IDs; the lists are disjoint and cover all patients.
  """
  patients = sorted(set(patient_ids))
  if len(patients) < len(SPLIT_FRACTIONS):
    raise ValueError(f'Need at least {len(SPLIT_FRACTIONS)} patients to make patient-level '
                     f'splits, found {len(patients)}.')
  order = np.random.default_rng(_SPLIT_SEED).permutation(len(patients))
  shuffled = [patients[i] for i in order]
  # The smaller splits are rounded up to one patient at least; train takes the rest.
  sizes = {name: max(1, round(fraction * len(patients)))
           for name, fraction in SPLIT_FRACTIONS.items() if name != 'train'}
  sizes['train'] = len(patients) - sum(sizes.values())
  splits, start = {}, 0
  for name in SPLIT_FRACTIONS:
    splits[name] = sorted(shuffled[start:start + sizes[name]])
    start += sizes[name]
  return splits


def _find_data_root(manual_dir: epath.Path) -> epath.Path:
  """The folder holding the patient folders: ``kaggle_3m`` in or under ``manual_dir``."""
  for candidate in (manual_dir / 'kaggle_3m', manual_dir / 'lgg-mri-segmentation' / 'kaggle_3m',
                    manual_dir):
    if candidate.is_dir() and any(p.is_dir() and p.name.startswith('TCGA_')
                                  for p in candidate.iterdir()):
      return candidate
  raise FileNotFoundError(
      f'No patient folders (TCGA_*) found in the manual directory {manual_dir} or in its '
      f'kaggle_3m/ subfolder.\n{Builder.MANUAL_DOWNLOAD_INSTRUCTIONS}')


def _read_tiff(path: epath.Path) -> np.ndarray:
  return tifffile.imread(io.BytesIO(path.read_bytes()))


class Builder(tfds.core.GeneratorBasedBuilder):
  """Kaggle LGG MRI Segmentation (kaggle_3m): brain MRI slices with FLAIR lesion masks."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES: ClassVar[dict[str, str]] = {'1.0.0': 'Initial release, patient-level 70/15/15 splits.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download the "LGG MRI Segmentation" dataset by Mateusz Buda from Kaggle:
    https://www.kaggle.com/datasets/mateuszbuda/lgg-mri-segmentation
  (for example ``kaggle datasets download -d mateuszbuda/lgg-mri-segmentation``), unzip it, and
  put its ``kaggle_3m`` folder (the one holding the TCGA_* patient folders) into the manual
  directory, by default ``~/tensorflow_datasets/downloads/manual/``, or pass another one with
  --config.manual_dir=/path/holding/kaggle_3m.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=IMAGE_SHAPE, dtype=np.uint8),
            'mask': tfds.features.Image(shape=IMAGE_SHAPE[:2] + (1,), dtype=np.uint8),
            'patient_id': tfds.features.Text(),
            'slice_index': tfds.features.Scalar(dtype=np.int32),
        }),
        supervised_keys=('image', 'mask'),
        homepage='https://www.kaggle.com/datasets/mateuszbuda/lgg-mri-segmentation',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = _find_data_root(epath.Path(dl_manager.manual_dir))
    patient_dirs = {p.name: p for p in root.iterdir() if p.is_dir() and p.name.startswith('TCGA_')}
    return {
        split: self._generate_examples([patient_dirs[patient] for patient in patients])
        for split, patients in split_patients(list(patient_dirs)).items()
    }

  def _generate_examples(self, patient_dirs: Sequence[epath.Path]) -> Iterator[tuple[str, dict]]:
    for patient_dir in patient_dirs:
      for image_path in sorted(patient_dir.glob('*.tif')):
        match = _SLICE_PATTERN.match(image_path.name)
        if match is None:  # A *_mask.tif file, read with its slice.
          continue
        mask_path = image_path.with_name(image_path.name[:-len('.tif')] + '_mask.tif')
        if not mask_path.exists():
          raise FileNotFoundError(f'Slice {image_path} has no mask {mask_path.name}.')
        mask = _read_tiff(mask_path)
        if mask.ndim == 2:
          mask = mask[..., None]
        yield image_path.stem, {
            'image': _read_tiff(image_path),
            'mask': (mask > 0).astype(np.uint8),
            'patient_id': patient_dir.name,
            'slice_index': int(match['index']),
        }
