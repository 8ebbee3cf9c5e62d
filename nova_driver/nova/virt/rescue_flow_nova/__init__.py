"""Where nova-compute finds rescue-flow's drivers.

nova.virt.driver.load_compute_driver imports ``nova.virt.<compute_driver>``
and has no fallback, so out-of-tree drivers ship a package in nova.virt
(as compute-hyperv does with nova.virt.compute_hyperv). The classes live in
rescue_flow_nova; these modules only name them.
"""
