"""The admin API under /admin: its own key, one module per resource, each handler a few lines
over a ``finetune`` service. The background workers the admin resources own (the training
tracker, the evaluation worker, the cycle runner) are built here too.
"""

from proxy.admin._aliases import AliasesController
from proxy.admin._base import AdminController, admin_guard
from proxy.admin._captures import CapturesController
from proxy.admin._cycles import CyclesController, cycle_runner
from proxy.admin._datasets import DatasetsController
from proxy.admin._evals import EvaluationsController, evaluation_worker
from proxy.admin._overview import OverviewController
from proxy.admin._promotions import PromotionsController
from proxy.admin._rules import RulesController
from proxy.admin._training import TrainingController, job_tracker
from proxy.admin._validate import ValidationController

CONTROLLERS = (
    AdminController,
    AliasesController,
    CapturesController,
    CyclesController,
    DatasetsController,
    EvaluationsController,
    OverviewController,
    PromotionsController,
    RulesController,
    TrainingController,
    ValidationController,
)
"""Every admin resource, in the order the wiring mounts them."""

__all__ = [
    "CONTROLLERS",
    "AdminController",
    "AliasesController",
    "CapturesController",
    "CyclesController",
    "DatasetsController",
    "EvaluationsController",
    "OverviewController",
    "PromotionsController",
    "RulesController",
    "TrainingController",
    "ValidationController",
    "admin_guard",
    "cycle_runner",
    "evaluation_worker",
    "job_tracker",
]
