"""Views of the provaudit record: atomic JSON writer, rich console summary, self-contained HTML report."""
