"""Tests of audit/claims: declarations, licences, claims against evidence."""
