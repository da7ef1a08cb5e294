"""The lgg_mri TFDS builder on dummy kaggle_3m TIFF files generated here."""

import itertools
import shutil
import tempfile

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
import tifffile
from etils import epath

from examples.unet_segmentation import input_pipeline
from examples.unet_segmentation.lgg_mri import lgg_mri_dataset_builder as lgg_mri

_SLICES_PER_PATIENT = 2
_PATIENTS = [f'TCGA_XX_{1000 + i}_20000101' for i in range(7)]


def _write_dummy_kaggle_3m(root: epath.Path) -> None:
  """Writes the kaggle_3m layout: per patient folder, ``*_N.tif`` slices and ``*_N_mask.tif``."""
  rng = np.random.default_rng(0)
  for patient in _PATIENTS:
    folder = root / 'kaggle_3m' / patient
    folder.mkdir(parents=True)
    for index in range(1, _SLICES_PER_PATIENT + 1):
      image = rng.integers(0, 256, lgg_mri.IMAGE_SHAPE, dtype=np.uint8)
      mask = np.zeros(lgg_mri.IMAGE_SHAPE[:2], np.uint8)
      mask[10 * index:20 * index, 30:60] = 255
      tifffile.imwrite(folder / f'{patient}_{index}.tif', image)
      tifffile.imwrite(folder / f'{patient}_{index}_mask.tif', mask)
  (root / 'kaggle_3m' / 'data.csv').write_text('Patient,...\n')  # Files besides folders exist.


def _expected_split_sizes() -> dict[str, int]:
  splits = lgg_mri.split_patients(_PATIENTS)
  return {name: len(patients) * _SLICES_PER_PATIENT for name, patients in splits.items()}


class LggMriBuilderTest(tfds.testing.DatasetBuilderTestCase):
  """The standard TFDS builder checks, on the dummy files, plus patient-level split checks."""

  DATASET_CLASS = lgg_mri.Builder
  SPLITS = _expected_split_sizes()
  SKIP_CHECKSUMS = True  # Manual download: there are no URLs to check.

  @classmethod
  def setUpClass(cls):
    cls._dummy_dir = tempfile.mkdtemp()
    _write_dummy_kaggle_3m(epath.Path(cls._dummy_dir))
    cls.EXAMPLE_DIR = cls._dummy_dir
    super().setUpClass()

  @classmethod
  def tearDownClass(cls):
    super().tearDownClass()
    shutil.rmtree(cls._dummy_dir)

  def test_no_patient_in_two_splits_and_masks_are_binary(self):
    builder = self.DATASET_CLASS(data_dir=self.tmp_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=self._dummy_dir))
    patients_by_split = {}
    for split in self.SPLITS:
      patients = set()
      for example in tfds.as_numpy(builder.as_dataset(split=split)):
        patients.add(example['patient_id'].decode())
        self.assertEqual(example['image'].shape, lgg_mri.IMAGE_SHAPE)
        self.assertEqual(set(np.unique(example['mask'])), {0, 1})
      patients_by_split[split] = patients
    all_patients = [p for patients in patients_by_split.values() for p in patients]
    self.assertEqual(sorted(all_patients), sorted(_PATIENTS))  # Each patient exactly once.


def test_split_patients_is_deterministic_disjoint_and_covering():
  patients = [f'TCGA_{i:03d}' for i in range(110)]
  splits = lgg_mri.split_patients(patients)
  assert splits == lgg_mri.split_patients(list(reversed(patients)))
  assert sorted(itertools.chain(*splits.values())) == patients
  assert {name: len(p) for name, p in splits.items()} == {'train': 78, 'validation': 16,
                                                          'test': 16}
  with pytest.raises(ValueError, match='at least 3 patients'):
    lgg_mri.split_patients(['a', 'b'])


@pytest.mark.parametrize('manual_content', [None, 'unrelated.txt'])
def test_missing_manual_files_error_gives_the_instructions(tmp_path, manual_content):
  manual_dir = tmp_path / 'manual'
  if manual_content:  # A manual directory without the kaggle_3m patient folders.
    manual_dir.mkdir()
    (manual_dir / manual_content).write_text('not the data')
  builder = lgg_mri.Builder(data_dir=str(tmp_path / 'data'))
  # TFDS itself rejects a missing manual directory (AssertionError); the builder an unusable one.
  with pytest.raises((AssertionError, FileNotFoundError), match='kaggle.com/datasets/mateuszbuda'):
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))


def test_input_pipeline_reads_lgg_mri_from_the_manual_dir(tmp_path):
  _write_dummy_kaggle_3m(epath.Path(tmp_path / 'manual'))
  config = ml_collections.ConfigDict({
      'dataset': 'lgg_mri', 'image_size': 32, 'data_dir': str(tmp_path / 'tfds'),
      'manual_dir': str(tmp_path / 'manual'), 'train_split': 'train', 'eval_split': 'test'})
  dataset = input_pipeline.load(config)
  train, evaluation = dataset.train, dataset.evaluation
  sizes = _expected_split_sizes()
  assert train['image'].shape == (sizes['train'], 32, 32, 3)
  assert evaluation['label'].shape == (sizes['test'], 32, 32, 1)
  # The dummy masks are rectangles of 255 in rows 10 i .. 20 i, columns 30 .. 60 of 256.
  assert set(np.unique(train['label'])) == {0, 1}
  assert train['label'][:, :, :3].max() == 0 and train['label'][:, 3:, 4:7].max() == 1
