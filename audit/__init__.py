"""provaudit: where did this language model really come from?"""

__version__ = "0.2.0"
