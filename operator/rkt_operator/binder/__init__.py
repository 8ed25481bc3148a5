"""The binder (``rkt-operator schedule``): places RktTasks that name no node."""
