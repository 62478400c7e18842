DROP TABLE access_epoch;
