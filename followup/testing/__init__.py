"""Test support, shared by ``tests/`` and ``benchmarks/``; never imported by the service itself.

* ``dicom_factory``: small synthetic DICOM MR series with known geometry (ingestion tests);
* ``service_harness``: real processes for service tests and benchmarks (redis-server, dcmtk
  storescp/storescu, ``followup`` subprocesses), each on 127.0.0.1 and a free port;
* ``pairs``: a synthetic study pair placed in a service's store and registry;
* ``webpage``: one patient analysed through the service's real paths and a reanalysis batch, and the
  API under uvicorn (the web page's browser tests and screenshots);
* ``bench``: what several benchmark scripts share (synthetic pairs, timing, the results file).

An installed package (``pip install -e .``) so that benchmark scripts import it without
``sys.path`` changes. Nothing under ``followup/`` outside this package imports it.
"""
