-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d),
-- as POSTGRES_USER, who owns the databases. One database per consumer service: each keeps
-- its tables, its applied offsets and event ids in its own database.
CREATE DATABASE erp;
CREATE DATABASE crm;
CREATE DATABASE analytics;
CREATE DATABASE audit;
CREATE DATABASE fleet;
