"""Is adaptation working? Training health read without target labels.

predictions.py  how the target predictions spread over the classes (`prediction_health`)
advice.py       patterns over consecutive evaluations that mean a run is unhealthy, each
                with the config keys to try (`HealthMonitor`, `RULES`)
report.py       the report of a finished or running run, read from its metrics (`health_report`)
__main__.py     `python -m dann.health run_dir=PATH`: prints that report
"""

from dann.health.advice import RULES, HealthMonitor, HealthWarning
from dann.health.predictions import prediction_health

__all__ = ["RULES", "HealthMonitor", "HealthWarning", "prediction_health"]
