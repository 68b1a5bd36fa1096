"""A small project package of activities, as a user of sfn-activities would write one."""
