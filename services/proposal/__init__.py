"""Proposal: owns a deal from qualification to won or lost; emits the deal-won contract."""
