"""``from runyard.widgets import RunDetails``, as ``from azureml.widgets import RunDetails``.

Needs the ``notebook`` extra (``pip install 'runyard[notebook]'``): ipywidgets and plotly.
"""

from .notebook.widget import RunDetails

__all__ = ["RunDetails"]
