"""Performance: operator profile, measured speed (bench), modelled platforms (time, energy)."""
