-- One database per service: no service reads another's tables.
CREATE DATABASE linli_requests;
CREATE DATABASE linli_volunteers;
CREATE DATABASE linli_notify;
CREATE DATABASE linli_community;
