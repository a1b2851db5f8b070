"""Builds the one native piece (armras/arch/_native.c); everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("armras.arch._native", ["armras/arch/_native.c"], optional=True)])
