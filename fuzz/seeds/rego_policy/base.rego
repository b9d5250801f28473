package kairos

deny["no-incident-admin"] := "incident tasks may not use admin entitlements" if {
    input.context.task_kind == "incident"
    input.resource.role == "admin"
}

allow["high-needs-one"] := {"approvals": 1, "reason": "high-tier access needs one approver"} if {
    input.resource.tier == "high"
}

allow["ci-jobs"] := "CI jobs may have the rest" if input.principal.kind == "ci-job"
