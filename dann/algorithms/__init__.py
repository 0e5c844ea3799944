"""Domain adaptation algorithms: one class each, sharing the update machinery of `Algorithm`.

| name (`algorithm=`) | class | paper |
| --- | --- | --- |
| `dann` | `DANN` | Ganin et al., JMLR 2016 |
| `cdan`, `cdan_e` | `CDAN` (`entropy_conditioning`) | Long et al., NeurIPS 2018 |
| `mcc` | `DANN` (`class_confusion_weight`) | Jin et al., ECCV 2020 |
| `im` | `DANN` (`target_entropy_weight`, `class_balance_weight`) | Liang et al., ICML 2020 (SHOT) |
| `vada` | `VADA` | Shu et al., ICLR 2018 |
| `dirt_t` | `DIRTT` | Shu et al., ICLR 2018 |
| `source_only`, `target_only` | `SourceOnly`, `TargetOnly` | the bounds |
"""

from dann.algorithms.base import Algorithm, predicted_classes
from dann.algorithms.bounds import SourceOnly, TargetOnly
from dann.algorithms.cdan import CDAN
from dann.algorithms.dann import DANN
from dann.algorithms.vada import DIRTT, VADA

__all__ = ["CDAN", "DANN", "DIRTT", "VADA", "Algorithm", "SourceOnly", "TargetOnly", "predicted_classes"]
