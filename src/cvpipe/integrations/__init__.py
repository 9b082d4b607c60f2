"""AWS services at the edge of the local engine, each registered into a ``cvpipe.asl.TaskRegistry``.

The interpreter core (``cvpipe.asl``) knows no service; these modules give Task Resources their
local meaning (Lambda handlers in worker processes, S3 as a folder, SageMaker jobs as local processes, ...)
and read the SAM template that ties the definition to them.
"""
