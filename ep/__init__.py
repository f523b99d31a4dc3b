"""The EP engine's parts beside netClasses / netFunctions."""
