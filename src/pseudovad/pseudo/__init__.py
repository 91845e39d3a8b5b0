"""Pseudo-anomaly makers: noise added to normal clips (LTGPA) and patch masks (MAE-NCT)."""
