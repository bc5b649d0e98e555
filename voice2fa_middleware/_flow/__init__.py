"""The challenge flow: the parts every handler works with (``runtime``), the budgets
(``budgets``), the pending cookie (``pending``), the one pipeline that starts a challenge
for verification and enrolment alike (``challenge``), and what is particular to enrolment
(``enrolment``)."""
