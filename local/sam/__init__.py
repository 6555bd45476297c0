"""SAM emulation: the template resolved, provisioned on moto, its Lambdas run and its HTTP API served."""
