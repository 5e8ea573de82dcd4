-- `increased_quota` raises the quota rule each request names, so an app may hold it for several
-- rules, one grant each: at most one open request per app, permission and rule (a request for a
-- permission that raises one rule, or none, names it or no rule at all).
DROP INDEX permission_requests_one_open;
CREATE UNIQUE INDEX permission_requests_one_open
    ON permission_requests (app_id, permission, COALESCE(requested_rule, ''))
    WHERE state IN ('submitted', 'in_review', 'on_hold');
