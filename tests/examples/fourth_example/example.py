"""The fourth example as the study's :class:`~examples.study.example.Example` record."""

from examples.study.example import Example
from tests.examples.fourth_example import input_pipeline
from tests.examples.fourth_example import models
from tests.examples.fourth_example.configs import default
from tests.examples.fourth_example.task import make_task

EXAMPLE = Example(
    fields=default.FIELDS,
    datasets=input_pipeline.DATASETS,
    check_model=models.check_model,
    load_data=input_pipeline.load,
    make_task=make_task,
    table_columns=(('test_accuracy', 'Test Accuracy', 3), ('train_loss', 'Train Loss', 4)),
    curves=(('test_accuracy', 'test accuracy', 3), ('train_loss', 'train loss', 4)),
)
