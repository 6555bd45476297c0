"""Code shared by the Lambdas (deployed as a layer). Keep it light: no pandas/numpy/scipy."""
