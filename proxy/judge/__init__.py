"""The filters at work: the chain built once from the config and run per
request, the stream judge, deferred observers and offloading to threads."""
