"""Functional ops of rstg_fast."""

from rstg_fast.ops.message_attention import message_attention

__all__ = ["message_attention"]
