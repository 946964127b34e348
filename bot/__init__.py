"""Pitcrew: ChatOps for GitOps teams on GitLab and Kubernetes."""

__version__ = "0.1.0"
