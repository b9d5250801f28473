package kairos

deny["no-incident-admin"] := "incident tasks may not use admin entitlements" if {
   {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{ input.context.task_kind == "incident"
    input.resource.role == "admin"
}

allow["high-needs-one"] := {"approvals": 1, "reason": "high-tier access npackage kairos

deny[ee"no-incident-admin"]ds  :=