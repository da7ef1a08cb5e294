"""One declaration per config field: what it accepts, checked before anything is written.

A config module declares its fields beside ``get_config`` as ``FIELDS = {name:
Field(...)}`` (dotted names for nested fields: ``'sweep.seeds'``);
:func:`check` refuses the first field whose value the declaration does not
accept, with one line naming the flag and what it accepts::

  --config.width=0 must be positive (an integer >= 1), or None.
"""

import dataclasses
import math
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import ml_collections

_KIND_NAMES = {bool: 'True or False', int: 'an integer', float: 'a finite number', str: 'a string'}


@dataclasses.dataclass(frozen=True)
class Field:
  """What one field accepts.

  Attributes:
    kind: ``bool``, ``int``, ``float`` or ``str`` (an ``int`` is a ``float`` too).
    minimum: the smallest value accepted, if any.
    above: a bound the value must exceed, if any (``learning_rate > 0``).
    maximum: the largest value accepted, if any.
    below: a bound the value must stay under, if any (``bn_momentum < 1``).
    choices: the values accepted, if only some are.
    optional: whether ``None`` is accepted (a placeholder: the default applies).
    sequence: whether the field is a tuple of such values (``sweep.seeds``).
  """

  kind: type
  minimum: float | None = None
  above: float | None = None
  maximum: float | None = None
  below: float | None = None
  choices: tuple | None = None
  optional: bool = False
  sequence: bool = False

  def describe(self) -> str:
    """What the field accepts, as the message says it: ``a finite number >= 0 and < 1``."""
    if self.choices is not None:
      text = f'one of {", ".join(map(str, self.choices))}'
    elif self.kind is int and self.minimum == 0 and self.maximum is None:
      text = 'a non-negative integer'
    elif self.kind is int and self.minimum == 1 and self.maximum is None:
      text = 'positive (an integer >= 1)'
    else:
      bounds = [f'{sign} {bound}' for sign, bound in (
          ('>=', self.minimum), ('>', self.above), ('<=', self.maximum), ('<', self.below))
          if bound is not None]
      kind = _KIND_NAMES.get(self.kind, f'a {self.kind.__name__}')
      text = ' '.join([kind, ' and '.join(bounds)]).strip()
    if self.sequence:
      text = f'a list, each item {text}'
    return text + (', or None' if self.optional else '')

  def accepts(self, value: Any) -> bool:
    if self.sequence:
      return isinstance(value, (tuple, list)) and all(map(self._accepts_one, value))
    return self._accepts_one(value)

  def _accepts_one(self, value: Any) -> bool:
    if value is None:
      return self.optional
    if self.kind is float:
      kind_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
      kind_ok = kind_ok and math.isfinite(value)
    elif self.kind is int:
      kind_ok = isinstance(value, int) and not isinstance(value, bool)
    else:
      kind_ok = isinstance(value, self.kind)
    return kind_ok and not (
        (self.choices is not None and value not in self.choices)
        or (self.minimum is not None and value < self.minimum)
        or (self.above is not None and value <= self.above)
        or (self.maximum is not None and value > self.maximum)
        or (self.below is not None and value >= self.below))


def _value(config: ml_collections.ConfigDict, name: str) -> Any:
  for key in name.split('.'):
    config = config[key]
  return config


def check(config: ml_collections.ConfigDict, declarations: Mapping[str, Field]) -> None:
  """Checks every declared field that ``config`` has.

  Raises:
    ValueError: ``--config.<name>=<value> must be <what it accepts>.`` for the first
      field it does not accept.
  """
  for name, field in declarations.items():
    try:
      value = _value(config, name)
    except (KeyError, AttributeError):
      continue  # A config without this part, e.g. a caller's own config of the core.
    if isinstance(value, list):
      value = tuple(value)
    if not field.accepts(value):
      raise ValueError(f'--config.{name}={value!r} must be {field.describe()}.')


def check_names(flag: str, names: Any, check: Callable[[Any], Any], what: str) -> None:
  """Calls ``check`` on the name, or on each name of the list, that ``flag`` gives.

  ``check`` refuses a name with ``ValueError('<...>; valid <what>s are: <...>')``, as the
  examples' ``check_model`` do, whichever flag it names; the refusal names ``flag``.

  Raises:
    ValueError: ``--config.sweep.models: Unknown model 'x'; valid models are: ...``.
  """
  for name in names if isinstance(names, (tuple, list)) else (names,):
    try:
      check(name)
    except ValueError as error:
      valid = str(error).partition('; ')[2] or str(error)
      raise ValueError(f'{flag}: Unknown {what} {name!r}; {valid}') from error


def undeclared(config: ml_collections.ConfigDict, declarations: Mapping[str, Field]) -> list[str]:
  """The fields of ``config`` that ``declarations`` leaves out (a declared dict counts whole)."""
  names = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict) and key not in declarations:
      names += [f'{key}.{name}' for name in undeclared(
          value, {k[len(key) + 1:]: f for k, f in declarations.items() if k.startswith(key + '.')})]
    elif key not in declarations:
      names.append(key)
  return names
