"""Builds the one native piece (armras/_native.c); everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("armras._native", ["armras/_native.c"], optional=True)])
