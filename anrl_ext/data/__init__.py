"""Data: the built-in synthetic benchmark, list-file datasets, transforms and samplers."""
from .datasets import BalancedDomainSampler, SyntheticDomains, collate
from .synthetic import DOMAINS, SyntheticSpec

__all__ = ["BalancedDomainSampler", "SyntheticDomains", "collate", "DOMAINS", "SyntheticSpec"]
