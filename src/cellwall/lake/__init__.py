"""The Parquet flow lake: atomic appends, the ingest manifest, quarantine and scans."""
