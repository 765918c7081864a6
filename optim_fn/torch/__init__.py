"""The PyTorch-faithful face: ``torch.optim``'s names, keywords, defaults and numbers.

``optim_fn.torch.Adam(lr=1e-3)`` is ``torch.optim.Adam(params, lr=1e-3)`` as an
optax-protocol transform: ``updates, state = opt.update(grads, state, params)``, then
``params = optim_fn.apply_updates(params, updates)`` is one ``opt.step()``. Built on the
same rules as the optax face (see :mod:`optim_fn.rules`), with PyTorch's options.
"""

from optim_fn.torch import lr_scheduler
from optim_fn.torch.adafactor import Adafactor
from optim_fn.torch.adaptive import ASGD, Adamax, NAdam, RAdam, Rprop
from optim_fn.torch.classic import SGD, Adadelta, Adagrad, Adam, AdamW, RMSprop
from optim_fn.torch.clip import clip_grad_norm_, clip_grad_value_, get_total_norm
from optim_fn.torch.lbfgs import LBFGS
from optim_fn.torch.muon import Muon
from optim_fn.torch.param_groups import param_groups
from optim_fn.torch.sparse_adam import SparseAdam
from optim_fn.torch.state_dict import from_torch_state_dict, to_torch_state_dict

__all__ = [
    "ASGD",
    "Adafactor",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "LBFGS",
    "Muon",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SparseAdam",
    "clip_grad_norm_",
    "clip_grad_value_",
    "get_total_norm",
    "lr_scheduler",
    "param_groups",
    "from_torch_state_dict",
    "to_torch_state_dict",
]
