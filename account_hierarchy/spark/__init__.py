"""The `spark` engine (`AH_ENGINE=spark`): a Spark session, its Ibis backend and the lake of
Parquet tables partitioned by hour that it reads and writes."""
