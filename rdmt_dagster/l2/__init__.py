"""The Level-2 image arm: identity, the image handed to monitors, star catalogs, WCS helpers.

Plain Python + numpy (and astropy / gwcs for the WCS); no Dagster here.
"""
