"""Onboarding: turns a won deal into an onboarding plan and tracks it to go-live."""
