# pbr reads everything from setup.cfg; this file only hands over to it.
import setuptools

setuptools.setup(setup_requires=["pbr>=6.0.0"], pbr=True)
